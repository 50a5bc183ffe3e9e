from fabricad.cli import main

main()
