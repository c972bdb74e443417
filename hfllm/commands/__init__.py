"""One thin module per command: parse options and config, call the library, print the JSON result."""
