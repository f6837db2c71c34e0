module github.com/kinlog/kinlog

go 1.26
