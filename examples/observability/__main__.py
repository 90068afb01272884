from examples.observability.monitored_chat import main

main()
