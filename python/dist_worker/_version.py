"""The version of the C library this package is made for (Cargo.toml's)."""

__version__ = "0.2.0"
