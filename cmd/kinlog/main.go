// Command kinlog is the kinlog worker and tool: consume, produce, query, demo and admin
// commands.
package main

func main() {}
