from fedrouter_cli.cli.app import main

main()
