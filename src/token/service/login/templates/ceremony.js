(function () {
  function dec(s) {
    s = s.replace(/-/g, '+').replace(/_/g, '/');
    while (s.length % 4) s += '=';
    return Uint8Array.from(atob(s), function (c) { return c.charCodeAt(0); });
  }
  function enc(b) {
    if (!b) return null;
    var s = '';
    new Uint8Array(b).forEach(function (x) { s += String.fromCharCode(x); });
    return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }
  var form = document.getElementById('webauthn-form');
  var problem = document.getElementById('webauthn-problem');
  document.getElementById('webauthn-start').addEventListener('click', async function () {
    var data = JSON.parse(document.getElementById('webauthn-options').textContent);
    var pk = data.options.publicKey;
    pk.challenge = dec(pk.challenge);
    try {
      var cred, out;
      if (data.mode === 'create') {
        pk.user.id = dec(pk.user.id);
        (pk.excludeCredentials || []).forEach(function (c) { c.id = dec(c.id); });
        cred = await navigator.credentials.create({ publicKey: pk });
        out = { response: {
          attestationObject: enc(cred.response.attestationObject),
          clientDataJSON: enc(cred.response.clientDataJSON),
          transports: cred.response.getTransports ? cred.response.getTransports() : null } };
      } else {
        (pk.allowCredentials || []).forEach(function (c) { c.id = dec(c.id); });
        cred = await navigator.credentials.get({ publicKey: pk });
        out = { response: {
          authenticatorData: enc(cred.response.authenticatorData),
          clientDataJSON: enc(cred.response.clientDataJSON),
          signature: enc(cred.response.signature),
          userHandle: enc(cred.response.userHandle) } };
      }
      out.id = cred.id;
      out.rawId = enc(cred.rawId);
      out.type = cred.type;
      out.extensions = cred.getClientExtensionResults();
      document.getElementById('credential').value = JSON.stringify(out);
      form.submit();
    } catch (e) {
      problem.textContent = 'Your security key or passkey did not answer (' + e.name + '). Try again.';
    }
  });
})();
