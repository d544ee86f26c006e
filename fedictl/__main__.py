from fedictl.cli import main

main()
