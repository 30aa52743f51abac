"""Model downloads that survive a dropped connection, a stall, a closed lid and a restart, and are verified
before anything can load them: the queue on disk, progress, the transfer of one file, and the downloader."""
