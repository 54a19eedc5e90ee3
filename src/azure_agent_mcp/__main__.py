from azure_agent_mcp.cli import main

raise SystemExit(main())
