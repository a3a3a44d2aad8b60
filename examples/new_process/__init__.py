"""Adding a process flowengine does not ship: a return-merchandise (RMA) flow; see README.md."""
