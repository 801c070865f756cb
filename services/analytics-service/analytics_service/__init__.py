"""vidpipe analytics service: tracks per stream, line and zone events, counts and a live view."""
