from conpaassql.cli import main

main()
