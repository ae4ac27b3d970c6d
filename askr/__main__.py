from askr.cli import main

main()
