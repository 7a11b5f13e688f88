from boltfix.cli import main

main()
