"""Reference implementations filed under this taxonomy node."""
