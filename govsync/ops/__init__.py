"""Operations tools: lag, dead letters, quality findings, replay, the monitor."""
