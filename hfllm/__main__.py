from hfllm.cli import main

main()
