"""An HTTP service desk embedding flowengine (FastAPI); see README.md."""
