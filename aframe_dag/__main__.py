from aframe_dag.cli import main

raise SystemExit(main())
