from askr.front.server import main

main()
