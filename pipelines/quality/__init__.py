"""Quality: marketplace checks and per-output quality flags recorded in manifests."""
