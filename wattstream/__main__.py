from wattstream.cli import main

main()
