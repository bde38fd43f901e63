from smsmesh.cli import main

raise SystemExit(main())
