from facelab.cli import main

main()
