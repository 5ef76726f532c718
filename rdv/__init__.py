"""rendezvous: champion and challenger models side by side on Spark Structured Streaming."""
