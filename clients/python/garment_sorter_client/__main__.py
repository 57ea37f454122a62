"""``python -m garment_sorter_client``: the same command line as ``garment-sorter-client``."""

from garment_sorter_client.cli import main

raise SystemExit(main())
