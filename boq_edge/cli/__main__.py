from boq_edge.cli.app import main

main()
