"""chunkrecorder: per-speaker, sample-exact voice recording for Red-DiscordBot."""
