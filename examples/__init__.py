"""Runnable examples; a package so `examples.new_process.hooks` and `examples.service_desk.app` import."""
