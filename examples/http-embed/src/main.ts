import { createApp } from './app.js';

// PORT (default 5000) for HTTP and WebSocket, RESP_PORT (default 6379) for Redis clients,
// XMPP_PORT (default 5222) for XMPP clients, and HOST
// choose where it listens; SIGTERM/SIGINT drain and exit.
await createApp().run();
