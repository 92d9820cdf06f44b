from cpwhisperx.cli import main

raise SystemExit(main())
