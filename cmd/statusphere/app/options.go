package app

// statusOptions are the emoji of the picker: the original Statusphere's set, in its order
// (which lists 😤 twice; once is enough here).
var statusOptions = []string{
	"👍", "👎", "💙", "🥹", "😧", "😤", "🙃", "😉", "😎", "🤓", "🤨", "🥳", "😭",
	"🤯", "🫡", "💀", "✊", "🤘", "👀", "🧠", "👩‍💻", "🧑‍💻", "🥷", "🧌", "🦋", "🚀",
}
