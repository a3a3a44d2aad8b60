from flowengine.cli import main

main()
