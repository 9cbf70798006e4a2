/** Text for HTML, in element content and in quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * The chat page: a shell of HTML whose script, public/chat.js, runs the chat (with public/xmpp.js, a
 * small XMPP-over-WebSocket client). Everything a peer sends is put in the page as text nodes.
 */
export function page(domain: string): string {
  const d = escapeHtml(domain);
  return `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="xmpp-domain" content="${d}">
<title>portbind chat</title>
<link rel="stylesheet" href="/chat.css">
<script type="module" src="/chat.js"></script>
<body>
<form id="login" class="card">
  <h1>portbind chat</h1>
  <label>User <input id="user" autocomplete="username" required> <span class="muted">@${d}</span></label>
  <label>Password <input id="password" type="password" autocomplete="current-password" required></label>
  <button>Log in</button>
  <p id="login-error" class="error" role="alert"></p>
</form>
<div id="app" hidden>
  <header>
    <strong id="me"></strong> <span id="status" role="status"></span>
    <button id="logout" type="button">Log out</button>
  </header>
  <aside>
    <h2>Contacts</h2>
    <ul id="contacts"></ul>
    <ul id="requests"></ul>
    <form id="add-contact"><input id="add-jid" placeholder="name@${d}" required> <button>Add</button></form>
    <h2>Rooms</h2>
    <ul id="rooms"></ul>
    <form id="join-room"><input id="room" placeholder="room" required> <input id="nick" placeholder="nick"> <button>Join</button></form>
    <p id="side-error" class="error" role="alert"></p>
  </aside>
  <main>
    <h2 id="title">Pick a contact or a room</h2>
    <div id="occupants" class="muted"></div>
    <ol id="messages"></ol>
    <form id="composer" hidden>
      <input id="body" placeholder="Message" autocomplete="off">
      <label id="attach" class="button" title="Share a picture or a file" hidden>File…<input id="file" type="file" hidden></label>
      <button>Send</button>
      <button id="leave" type="button" hidden>Leave room</button>
    </form>
    <p id="composer-error" class="error" role="alert"></p>
  </main>
</div>
</body>
</html>
`;
}
