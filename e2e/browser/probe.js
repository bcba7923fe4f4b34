// Reports which view of the PDS's OAuth UI (@atproto/oauth-provider-ui) the
// page shows, for SignInAtPDS. The markers come from the UI's source:
//
//   sign-in form (sign-in-form.tsx): input[name=username] (read-only and
//     disabled when the client sent login_hint), input[name=password], and a
//     submit button labelled "Sign in" (form-card-async.tsx); the form is
//     `inert` while the request runs, and an error shows as an ErrorCard
//     at the top of the form: role=alert with aria-controls (a random id;
//     the always-present password warning is role=alert without it).
//   welcome (welcome-view.tsx), shown without login_hint when the PDS lets
//     users sign up: type=button buttons "Create a new account", "Sign in",
//     "Cancel".
//   account picker (sign-in-picker.tsx), when the device has sessions:
//     role=button items with aria-label "Sign in as …", and one with
//     aria-label "Login to account that is not listed".
//   consent (consent-form.tsx): submit button "Authorize", button "Deny
//     access".
//   error page (error-page.tsx, send-error-page.js): window.__errorData.
//   done: "You are being redirected..." while the browser goes to
//     /oauth/authorize/redirect, which answers 303 to the client.
(() => {
  const clean = (s) => (s || '').replace(/\s+/g, ' ').trim()
  const visible = (el) => !!el && el.getClientRects().length > 0
  const buttons = [...document.querySelectorAll('button')].filter(visible)
  const button = (label, type) =>
    buttons.find((b) => clean(b.textContent) === label && b.type === type)

  const password = document.querySelector('input[name="password"]')
  const username = document.querySelector('input[name="username"]')
  const signIn = button('Sign in', 'submit')
  const welcomeSignIn = button('Sign in', 'button')
  const authorize = button('Authorize', 'submit')
  const accounts = [
    ...document.querySelectorAll('[role="button"][aria-label^="Sign in as"]'),
  ].filter(visible)
  const other = document.querySelector(
    '[role="button"][aria-label="Login to account that is not listed"]',
  )
  const errorCard = document.querySelector('form [role="alert"][aria-controls]')
  const form = (password || authorize)?.closest('form')

  let view = 'unknown'
  if (typeof window.__errorData === 'object') view = 'error'
  else if (visible(password)) view = 'signin'
  else if (authorize) view = 'consent'
  else if (accounts.length > 0 || visible(other)) view = 'picker'
  else if (welcomeSignIn) view = 'welcome'
  else if (/You are being redirected/.test(document.body?.innerText || ''))
    view = 'redirecting'

  return {
    url: location.href,
    origin: location.origin,
    path: location.pathname,
    authorizePage: typeof window.__authorizeData === 'object',
    errorData:
      typeof window.__errorData === 'object'
        ? JSON.stringify(window.__errorData)
        : '',
    view,
    usernameEditable: !!username && !username.readOnly && !username.disabled,
    username: username ? username.value : '',
    passwordLength: password ? password.value.length : 0,
    busy: !!(form && form.inert) || !!(signIn && signIn.disabled),
    error: errorCard ? clean(errorCard.innerText) : '',
    accounts: accounts.map((a) => clean(a.innerText)),
    text: clean(document.body ? document.body.innerText : '').slice(0, 1500),
  }
})()
