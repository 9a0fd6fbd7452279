from ontheway.cli import main

main()
