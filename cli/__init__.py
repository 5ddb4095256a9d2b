"""The `governor` command line (cli.main); it sits on top of the client SDK in governor/."""
