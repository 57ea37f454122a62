"""The review station: a web page for the person at the REVIEW bin (server-rendered, a little
plain JavaScript, every asset served by the service itself)."""
