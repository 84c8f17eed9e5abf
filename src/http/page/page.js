'use strict';
const HEX_DIGEST = /^[0-9a-fA-F]{64}$/;

function show(element, text, isError) {
  element.textContent = text;
  element.classList.toggle('error', Boolean(isError));
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body.err_msg + ' (' + body.code + ')';
  } catch {
    return 'HTTP ' + response.status;
  }
}

async function store(event) {
  event.preventDefault();
  const result = document.getElementById('store-result');
  const headers = { 'content-type': 'application/json' };
  const token = document.getElementById('token').value.trim();
  if (token !== '') headers.authorization = 'Bearer ' + token;
  show(result, 'Storing…');
  try {
    const response = await fetch('/messages', {
      method: 'POST',
      headers,
      body: JSON.stringify({ message: document.getElementById('message').value }),
    });
    if (response.status === 410) {
      return show(result, 'This message was taken down: it cannot be stored again (MESSAGE_REMOVED).', true);
    }
    if (!response.ok) return show(result, await errorText(response), true);
    const { digest } = await response.json();
    result.textContent = 'Stored as ';
    result.classList.remove('error');
    const link = document.createElement('a');
    link.id = 'digest-link';
    link.href = '#' + digest;
    link.textContent = digest;
    result.append(link);
  } catch (error) {
    show(result, 'Network error: ' + error.message, true);
  }
}

async function openDigest(digest) {
  const result = document.getElementById('open-result');
  const view = document.getElementById('view');
  document.getElementById('digest').value = digest;
  view.hidden = true;
  show(result, 'Loading…');
  try {
    const response = await fetch('/messages/' + encodeURIComponent(digest), {
      headers: { accept: 'application/json' },
    });
    if (response.status === 410) {
      return show(result, 'This message was taken down and is no longer served (MESSAGE_REMOVED).', true);
    }
    if (!response.ok) return show(result, await errorText(response), true);
    const { message } = await response.json();
    document.getElementById('view-digest').textContent = digest.toLowerCase();
    document.getElementById('message-view').textContent = message;
    view.hidden = false;
    show(result, '');
  } catch (error) {
    show(result, 'Network error: ' + error.message, true);
  }
}

function openFromHash() {
  const digest = decodeURIComponent(location.hash.slice(1));
  if (HEX_DIGEST.test(digest)) void openDigest(digest);
}

document.getElementById('store-form').addEventListener('submit', store);
document.getElementById('open-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const digest = document.getElementById('digest').value.trim();
  if (location.hash === '#' + digest) openFromHash();
  else location.hash = digest;
});
window.addEventListener('hashchange', openFromHash);
openFromHash();
