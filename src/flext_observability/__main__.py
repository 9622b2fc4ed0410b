from flext_observability.cli import main

raise SystemExit(main())
