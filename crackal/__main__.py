from crackal.cli import main

raise SystemExit(main())
