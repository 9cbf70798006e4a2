import { createApp } from './app.js';

// PORT (default 5000) for HTTP, WebSocket, Redis clients and XMPP clients alike; RESP_PORT or
// XMPP_PORT give Redis or XMPP a port of their own; HOST chooses the interface.
// SIGTERM/SIGINT drain and exit.
await createApp().run();
