// The settings every certificate dialog shares: name, security clearance and database permissions.
// Permissions are shown only for the User clearance, the only one they apply to.

import { h, field, select } from "./dom.js";
import { clearanceLabel } from "./format.js";
import { permissionsEditor } from "./permissions.js";
import { session } from "./session.js";

/** Roost's limit for a certificate's name (Name in the certificate definition). */
export const NAME_LIMIT = 200;
/** A generated certificate carries its name as the subject's Common Name, which X.509 limits to 64 characters. */
export const COMMON_NAME_LIMIT = 64;

/** Clears a dialog's refusal as soon as any of its inputs changes: the message was about the old input. */
export function clearErrorOnInput(form, error) {
  const clear = () => error.clear();
  form.addEventListener("input", clear);
  form.addEventListener("change", clear);
}

/**
 * certificateSettings({name, clearance, permissions, databases, clearances})
 * -> {elements, nameInput, value(): {Name, SecurityClearance, Permissions}, validate(): message|null}
 */
export function certificateSettings({
  name = "",
  clearance = "ValidUser",
  permissions = {},
  databases = [],
  clearances = ["ClusterAdmin", "Operator", "ValidUser"],
  maxName = NAME_LIMIT,
  nameHint = `At most ${NAME_LIMIT} characters.`,
}) {
  const nameInput = h("input", {
    type: "text", name: "name", required: true, autocomplete: "off", value: name, maxlength: maxName,
  });
  // The limit is said before submitting: in the hint, and as a count once the name gets near it.
  const count = h("p", { class: "hint name-count", "aria-live": "polite", hidden: true });
  const countName = () => {
    const n = nameInput.value.length;
    count.hidden = n < maxName - 10;
    count.textContent = n >= maxName ? `${n} of ${maxName} characters: the limit` : `${n} of ${maxName} characters`;
  };
  nameInput.addEventListener("input", countName);
  countName();
  const adminOnly = !session.isClusterAdmin();
  const clearanceSelect = select(
    clearances.map((c) => [
      c,
      clearanceLabel(c) + (adminOnly && (c === "ClusterAdmin" || c === "ClusterNode") ? " (Cluster Admin only)" : ""),
      { disabled: adminOnly && (c === "ClusterAdmin" || c === "ClusterNode") },
    ]),
    clearance,
    { name: "clearance" },
  );
  const editor = permissionsEditor(databases, permissions);
  const adminNote = h(
    "p",
    { class: "hint" },
    "Operators and Cluster Admins reach every database; database permissions apply to User certificates only.",
  );
  const syncPermissions = () => {
    const isUser = clearanceSelect.value === "ValidUser";
    editor.element.hidden = !isUser;
    adminNote.hidden = isUser;
  };
  clearanceSelect.addEventListener("change", syncPermissions);
  syncPermissions();

  const nameField = field("Name", nameInput, nameHint);
  nameField.append(count);
  const elements = [
    nameField,
    field(
      "Security clearance",
      clearanceSelect,
      adminOnly ? "Only a Cluster Admin can give Cluster Admin or Cluster Node clearance." : null,
    ),
    editor.element,
    adminNote,
  ];
  return {
    elements,
    nameInput,
    clearanceSelect,
    value() {
      const SecurityClearance = clearanceSelect.value;
      return {
        Name: nameInput.value.trim(),
        SecurityClearance,
        Permissions: SecurityClearance === "ValidUser" ? editor.value() : {},
      };
    },
    validate() {
      if (!nameInput.value.trim()) {
        nameInput.focus();
        return "Give the certificate a name.";
      }
      if (nameInput.value.trim().length > maxName) {
        nameInput.focus();
        return `The name is ${nameInput.value.trim().length} characters long; the limit is ${maxName}.`;
      }
      if (clearanceSelect.value === "ValidUser" && editor.duplicates().length > 0) {
        return `The database ${editor.duplicates()[0]} is listed twice; keep one permission per database.`;
      }
      return null;
    },
  };
}

/** The server's database names, or [] with the refusal shown in `errors` when the list is refused. */
export async function loadDatabaseNames(request, errors) {
  try {
    const body = await request("GET", "/databases", { query: { namesOnly: true } });
    return (body?.Databases ?? []).map((d) => (typeof d === "string" ? d : d.Name)).filter(Boolean);
  } catch (err) {
    errors?.show(`The database list could not be loaded: ${err.message}`);
    return [];
  }
}
