// burnlink's pages: local expiry times, the download note, and the upload form.
// The upload sends the file's raw bytes as the request body (as `curl --data-binary` does),
// never a multipart form, so what arrives is byte for byte the file.
(function () {
  'use strict';

  function size(n) {
    var units = ['bytes', 'KB', 'MB', 'GB', 'TB'];
    var i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
    return (i === 0 ? String(n) : n.toFixed(n < 10 ? 1 : 0)) + ' ' + units[i];
  }

  document.querySelectorAll('time[datetime]').forEach(function (t) {
    var d = new Date(t.getAttribute('datetime'));
    if (!isNaN(d.getTime())) { t.textContent = d.toLocaleString(); }
  });

  var download = document.getElementById('download-form');
  if (download) {
    download.addEventListener('submit', function () {
      var button = document.getElementById('download-button');
      var note = document.getElementById('download-note');
      note.hidden = false;
      // A double click would start a second transfer that the first one blocks.
      setTimeout(function () { button.disabled = true; }, 0);
      setTimeout(function () { button.disabled = false; }, 5000);
    });
  }

  var form = document.getElementById('upload-form');
  if (!form) { return; }
  var input = document.getElementById('file');
  var drop = document.getElementById('drop');
  var chosenText = document.getElementById('chosen');
  var button = document.getElementById('upload-button');
  var bar = document.getElementById('progress');
  var percent = document.getElementById('percent');
  var status = document.getElementById('status');
  var cap = Number(form.getAttribute('data-cap'));
  var chosen = null;

  function say(text, kind) {
    status.textContent = text;
    status.className = 'status' + (kind ? ' ' + kind : '');
    status.hidden = false;
  }

  function choose(file) {
    chosen = file;
    chosenText.textContent = file.name + ' (' + size(file.size) + ')';
    chosenText.hidden = false;
    if (file.size > cap) {
      button.disabled = true;
      say('This file is ' + size(file.size) + ', more than this link accepts (' + size(cap) +
        '). Choose a smaller file.', 'error');
    } else {
      button.disabled = false;
      status.hidden = true;
    }
  }

  input.addEventListener('change', function () {
    if (input.files && input.files.length) { choose(input.files[0]); }
  });
  ['dragenter', 'dragover'].forEach(function (type) {
    drop.addEventListener(type, function (e) { e.preventDefault(); drop.classList.add('over'); });
  });
  ['dragleave', 'drop'].forEach(function (type) {
    drop.addEventListener(type, function () { drop.classList.remove('over'); });
  });
  drop.addEventListener('drop', function (e) {
    e.preventDefault();
    if (e.dataTransfer && e.dataTransfer.files.length) { choose(e.dataTransfer.files[0]); }
  });

  var messages = {
    too_large: function () {
      return 'The file is larger than this link accepts (' + size(cap) + '). Nothing was saved ' +
        'and the link still works: choose a smaller file.';
    },
    digest_mismatch: function () {
      return 'This is not the file that was expected: its checksum does not match. Nothing was ' +
        'saved and the link still works.';
    },
    exists: function () {
      return 'A file with this name is already there and this link may not replace it. Ask ' +
        'the sender for a new link.';
    },
    in_progress: function () {
      return 'Another upload through this link is running right now. Wait for it, or try again ' +
        'in a moment.';
    },
    used: function () {
      return 'This link has already been used: a file was uploaded through it. Ask the sender ' +
        'for a new link.';
    },
    revoked: function () { return 'This link was cancelled by its sender. Ask for a new one.'; },
    expired: function () { return 'This link has expired. Ask the sender for a new one.'; },
    not_found: function () {
      return 'This link is not valid. Check that it was copied whole, or ask for a new one.';
    },
    unavailable: function () {
      return 'The server cannot check links right now. Nothing was saved: try again in a minute.';
    }
  };

  function finish(xhr) {
    var body = null;
    try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
    if (xhr.status === 201 && body) {
      form.hidden = true;
      // The server names the file after the link's destination, not after the chosen file.
      var saved = String(body.path || '').split('/').pop();
      say('Done: ' + chosen.name + ' arrived (' + size(body.bytes) + ') and was saved as ' + saved +
        '. You can close this page.', 'ok');
      document.getElementById('digest').textContent = 'SHA-256: ' + body.sha256;
      document.getElementById('digest').hidden = false;
      return;
    }
    var code = body && body.error;
    var text = messages[code] ? messages[code]() :
      'The upload failed (HTTP ' + xhr.status + ')' + (body && body.message ? ': ' + body.message : '') +
      '. Nothing was saved and the link still works.';
    say(text, 'error');
    ready();
  }

  // After a failure: the same file or another can be sent again.
  function ready() {
    input.disabled = false;
    button.disabled = false;
    bar.hidden = true;
    percent.hidden = true;
  }

  form.addEventListener('submit', function (e) {
    e.preventDefault();
    if (!chosen) { say('Choose a file first.', 'error'); return; }
    var xhr = new XMLHttpRequest();
    xhr.open('POST', window.location.pathname + window.location.search);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.addEventListener('progress', function (ev) {
      if (!ev.lengthComputable) { return; }
      bar.max = ev.total;
      bar.value = ev.loaded;
      percent.textContent = Math.floor((100 * ev.loaded) / Math.max(ev.total, 1)) + '% of ' +
        size(ev.total);
    });
    xhr.addEventListener('load', function () { finish(xhr); });
    xhr.addEventListener('error', function () {
      say('The connection broke before the upload finished. Nothing was saved and the link ' +
        'still works: try again. (A file over ' + size(cap) + ' is refused.)', 'error');
      ready();
    });
    input.disabled = true;
    button.disabled = true;
    bar.value = 0;
    bar.hidden = false;
    percent.hidden = false;
    say('Uploading ' + chosen.name + '…');
    xhr.send(chosen);
  });
}());
