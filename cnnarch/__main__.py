from cnnarch.cli import main

raise SystemExit(main())
