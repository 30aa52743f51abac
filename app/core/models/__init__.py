"""Models: this machine's hardware, the catalog, fit and speed, the Hub, downloads, and the installed models."""
