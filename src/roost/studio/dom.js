// The one way the Studio builds DOM. Text goes in through text nodes and values through attributes
// or properties; nothing here ever parses HTML, so a certificate named `<img onerror=...>` stays text.
// Event handlers are attached with addEventListener (the CSP forbids inline handlers and styles).

const PROPERTIES = new Set(["value", "checked", "disabled", "selected", "indeterminate", "open"]);
const FORBIDDEN = new Set(["innerHTML", "outerHTML", "srcdoc", "style"]);

/**
 * h("button", {class: "primary", on: {click: fn}}, "Save") -> <button class="primary">Save</button>
 * Attributes whose value is null, undefined or false are left out; true gives an empty attribute.
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (FORBIDDEN.has(key) || /^on[a-z]/i.test(key)) {
      throw new Error(`dom.h: "${key}" is not allowed; use classes and the "on" map`);
    }
    if (key === "class") {
      el.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : String(value);
    } else if (key === "on") {
      for (const [type, handler] of Object.entries(value)) el.addEventListener(type, handler);
    } else if (key === "dataset") {
      for (const [name, v] of Object.entries(value)) el.dataset[name] = String(v);
    } else if (key === "text") {
      el.textContent = String(value);
    } else if (PROPERTIES.has(key)) {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, ...children);
  return el;
}

/** Appends nodes and strings (as text nodes); nested arrays are flattened, null and false skipped. */
export function append(parent, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replaces every child of `parent` with `children`. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, ...children);
}

let uid = 0;
/** A unique id, for <label for> and aria-describedby. */
export function newId(prefix = "f") {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A labelled form field: <div class="field"><label for>Label</label>control<p hint/></div>. */
export function field(label, control, hint) {
  if (!control.id) control.id = newId();
  const parts = [h("label", { for: control.id }, label), control];
  if (hint) {
    const hintId = newId("hint");
    control.setAttribute("aria-describedby", hintId);
    parts.push(h("p", { class: "hint", id: hintId }, hint));
  }
  return h("div", { class: "field" }, parts);
}

/** A <select> with [value, label, {disabled, title}] options. */
export function select(options, value, props = {}) {
  const el = h(
    "select",
    props,
    options.map(([v, label, extra = {}]) => h("option", { value: v, ...extra }, label)),
  );
  if (value !== undefined) el.value = value;
  return el;
}

/** A region for a refusal or error, announced to screen readers; empty and hidden until used. */
export function errorBox() {
  const box = h("div", { class: "error-box", role: "alert", hidden: true });
  box.show = (message) => {
    replace(box, message);
    box.hidden = !message;
  };
  box.clear = () => box.show("");
  return box;
}
