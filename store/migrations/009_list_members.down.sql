DROP TABLE list_members;
