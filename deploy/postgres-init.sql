-- Databases beside Airflow's: MLflow's tracking and registry store, MLflow's users (basic-auth),
-- and the serving API's keys, events and filters (shared by `airsight serve` and the API mounted
-- in Airflow's API server).
CREATE DATABASE mlflow OWNER airsight;
CREATE DATABASE mlflow_auth OWNER airsight;
CREATE DATABASE serving OWNER airsight;
