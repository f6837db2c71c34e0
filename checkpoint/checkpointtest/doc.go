// Package checkpointtest is the acceptance suite every checkpoint store must pass.
package checkpointtest
