from unimed_data.cli import main

main()
