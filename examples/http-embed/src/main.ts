import { createApp } from './app.js';

// PORT (default 5000) and HOST choose where it listens; SIGTERM/SIGINT drain and exit.
await createApp().run();
