"""Recording service: stores forked call media as WAV files and publishes them."""
