"""The command line: one module per subcommand; app.py only wires them."""
