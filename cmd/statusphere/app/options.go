package app

// statusOptions returns the emoji of the picker: the original Statusphere's set, in its order
// (which lists 😤 twice; once is enough here).
func statusOptions() []string {
	return []string{
		"👍", "👎", "💙", "🥹", "😧", "😤", "🙃", "😉", "😎", "🤓", "🤨", "🥳", "😭",
		"🤯", "🫡", "💀", "✊", "🤘", "👀", "🧠", "👩‍💻", "🧑‍💻", "🥷", "🧌", "🦋", "🚀",
	}
}
