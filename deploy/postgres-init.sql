-- Databases beside Airflow's: MLflow's tracking and registry store, and the serving API's events.
CREATE DATABASE mlflow OWNER airsight;
CREATE DATABASE serving OWNER airsight;
