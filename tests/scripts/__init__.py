"""Scripts the process-life tests run in their own interpreter (subprocess, fork, gunicorn)."""
